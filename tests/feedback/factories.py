import factory
from django.utils import timezone

from feedback.models import FeedbackSeverity, PatternFeedback, PatternType
from tests.factories import TenantFactory


class PatternFeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PatternFeedback

    tenant = factory.SubFactory(TenantFactory)
    pattern_type = PatternType.FAILURE_PATTERN
    severity = FeedbackSeverity.WARNING
    description = "Repeated failure detected: 3 occurrences. Sample: boom"
    signature = factory.Sequence(lambda n: f"{n:016x}")
    provenance = factory.LazyFunction(lambda: ["run-a", "run-b", "run-c"])
    occurrence_count = factory.LazyAttribute(lambda o: len(o.provenance))
    time_window_minutes = 1440
    threshold_used = "threshold=3"
    metadata = factory.LazyFunction(
        lambda: {"worker_id": "worker-a", "worker_ids": ["worker-a"], "sample_error": "boom"}
    )
    detected_at = factory.LazyFunction(timezone.now)
