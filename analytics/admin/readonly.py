"""Read-only admin pages: rows that services write and operators only look at.

Ingest, detection, the snapshot jobs and the prediction cycle write these rows; an edit by
hand would disagree with the data they were computed from. Any writes such a page offers
are admin actions that call the same services as the API.
"""

from django.contrib import admin


class ReadOnlyAdminMixin:
    """No add, change or delete, for a model admin or an inline alike."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A read-only page over a large append-only table."""

    show_full_result_count = False  # no COUNT(*) over millions of rows per page view
