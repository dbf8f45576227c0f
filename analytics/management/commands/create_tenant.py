from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from analytics.models import Tenant
from analytics.services.tenants import api_key_create, tenant_create


class Command(BaseCommand):
    help = "Create an active tenant and one API key; the key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="tenant slug: lower-case letters, digits and '-'")
        parser.add_argument("--name", default="", help="display name (default: the slug)")

    def handle(self, *args, slug: str, name: str, **options):
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"Tenant {slug!r} already exists.")
        try:
            tenant = tenant_create(slug=slug, name=name)
        except ValidationError as exc:
            raise CommandError(f"Invalid tenant: {'; '.join(exc.messages)}") from None
        api_key, raw_key = api_key_create(tenant=tenant, name="default")
        self.stdout.write(f"Created tenant {tenant.slug} (id {tenant.pk}).")
        self.stdout.write(self.style.SUCCESS(f"API key {api_key.prefix}… created; store it now:"))
        self.stdout.write(raw_key)
