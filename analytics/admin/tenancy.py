from django.contrib import admin, messages

from analytics.models import ApiKey, Tenant
from analytics.services.tenants import api_key_create, api_keys_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("name", "prefix", "is_staff", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        # Keys are created with the "Create an API key" action so the raw key can be shown once.
        return False


def tenants_create_keys(request, tenants) -> list[tuple[Tenant, str]]:
    """Create one key per tenant and return the raw keys (for the admin action)."""
    created = []
    for tenant in tenants.order_by("pk"):
        _, raw_key = api_key_create(tenant=tenant, name=f"admin:{request.user.get_username()}")
        created.append((tenant, raw_key))
    return created


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "is_active", "retention_days", "created_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)
    inlines = [ApiKeyInline]
    actions = ["create_api_key", "deactivate", "activate"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # tenants are deactivated, never deleted

    @admin.action(description="Create an API key (shown once)")
    def create_api_key(self, request, queryset):
        for tenant, raw_key in tenants_create_keys(request, queryset):
            self.message_user(
                request,
                f"New API key for {tenant.slug}: {raw_key} — copy it now, it is not stored.",
                messages.WARNING,
            )

    @admin.action(description="Deactivate selected tenants")
    def deactivate(self, request, queryset):
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} tenant(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Activate selected tenants")
    def activate(self, request, queryset):
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} tenant(s) activated.", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "tenant",
        "name",
        "is_staff",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("is_staff", ("revoked_at", admin.EmptyFieldListFilter), "tenant")
    search_fields = ("prefix", "name", "tenant__slug")
    list_select_related = ("tenant",)
    fields = ("tenant", "name", "prefix", "is_staff", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("tenant", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke", "mark_staff", "unmark_staff"]

    def has_add_permission(self, request) -> bool:
        return False  # use the tenant action, which can show the raw key once

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead, so the audit trail of actors stays resolvable

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = api_keys_revoke(keys=queryset)
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)

    @admin.action(description="Mark selected keys as staff")
    def mark_staff(self, request, queryset):
        count = queryset.update(is_staff=True)
        self.message_user(request, f"{count} key(s) marked staff.", messages.SUCCESS)

    @admin.action(description="Remove staff from selected keys")
    def unmark_staff(self, request, queryset):
        count = queryset.update(is_staff=False)
        self.message_user(request, f"{count} key(s) no longer staff.", messages.SUCCESS)
