import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a staff superuser for the admin console with a random password, printed once. "
        "Does nothing when the user already exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin", help="login name (default: admin)")

    def handle(self, *args, username: str, **options):
        if not username.strip():
            raise CommandError("--username may not be blank.")
        users = get_user_model().objects
        if users.filter(username=username).exists():
            self.stdout.write(
                f"Operator {username!r} exists; reset its password with "
                f"`manage.py changepassword {username}`."
            )
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Admin login: {username} / {password}"))
