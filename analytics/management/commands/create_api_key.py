from django.core.management.base import BaseCommand, CommandError

from analytics.models import Tenant
from analytics.services.tenants import api_key_create


class Command(BaseCommand):
    help = (
        "Create another API key for an existing tenant (the demo tenant's first key is shown "
        "only once); the key is printed once, on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the tenant's slug, e.g. demo")
        parser.add_argument("--name", default="cli", help="label of the key (default: cli)")

    def handle(self, *args, slug: str, name: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"Unknown tenant {slug!r}; create it with `create_tenant {slug}`.")
        if not tenant.is_active:
            # Keys of an inactive tenant are refused, so a new one would not work either.
            raise CommandError(f"Tenant {slug!r} is inactive; activate it in the admin first.")
        api_key, raw_key = api_key_create(tenant=tenant, name=name)
        self.stdout.write(
            self.style.SUCCESS(f"API key {api_key.prefix}… created for {slug}; store it now:")
        )
        self.stdout.write(raw_key)
