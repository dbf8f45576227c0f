from datetime import timedelta

import factory
from django.utils import timezone

from predictions.models import Prediction, PredictionType, SubjectType
from predictions.services.cycle import cycle_hour_of
from tests.factories import TenantFactory


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    tenant = factory.SubFactory(TenantFactory)
    prediction_type = PredictionType.FAILURE_LIKELIHOOD
    subject_type = SubjectType.WORKER
    subject_id = factory.Sequence(lambda n: f"worker-{n}")
    confidence_score = 0.6
    prediction_value = factory.LazyFunction(
        lambda: {
            "predicted_outcome": "high_failure_likelihood",
            "failure_rate": 0.4,
            "recent_failures": 2,
            "total_runs": 5,
        }
    )
    contributing_factors = factory.LazyFunction(
        lambda: [{"type": "recent_failures", "count": 2}, {"type": "failure_rate", "value": 0.4}]
    )
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyAttribute(lambda o: o.created_at)
    cycle_hour = factory.LazyAttribute(lambda o: cycle_hour_of(o.created_at))
    expires_at = factory.LazyAttribute(lambda o: o.created_at + timedelta(hours=24))
    notes = "ADVISORY: This is a prediction, not a fact."
