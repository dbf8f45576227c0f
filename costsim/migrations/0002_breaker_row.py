from django.db import migrations


def create_breaker(apps, schema_editor):
    CircuitBreaker = apps.get_model("costsim", "CircuitBreaker")
    CircuitBreaker.objects.get_or_create(name="costsim_v2")


class Migration(migrations.Migration):
    dependencies = [("costsim", "0001_initial")]

    operations = [migrations.RunPython(create_breaker, migrations.RunPython.noop)]
