"""Drop CostSim's own alert outbox: notifications 0002 copied its rows into the one
delivery outbox, where the breaker now queues its Alertmanager alerts."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("costsim", "0003_canary_insufficient_data"),
        ("notifications", "0002_alertmanager_channel"),
    ]

    operations = [migrations.DeleteModel(name="AlertOutbox")]
