"""ApiKeyLaneMiddleware: API requests with a key and no cookie skip the browser middleware."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from django.test import Client
from django.urls import include, path

import config.urls
from analytics.api.middleware import ApiKeyLaneMiddleware

pytestmark = pytest.mark.django_db


def _what_ran(request):
    """Which browser middleware touched the request: sessions and the user are set on it."""
    return JsonResponse({"session": hasattr(request, "session"), "user": hasattr(request, "user")})


urlpatterns = [
    path("api/lane-probe/", _what_ran),
    path("lane-probe/", _what_ran),
    path("", include(config.urls)),
]


@pytest.fixture
def probe(settings):
    settings.ROOT_URLCONF = __name__


def test_key_without_a_cookie_skips_the_browser_middleware(probe):
    # when
    response = Client().get("/api/lane-probe/", HTTP_AUTHORIZATION="Api-Key ck_anything")
    # then: no session, no user; the middleware around the lane still ran
    assert response.json() == {"session": False, "user": False}
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/api/lane-probe/", {"HTTP_AUTHORIZATION": "Api-Key ck_x", "HTTP_COOKIE": "sessionid=1"}),
        ("/api/lane-probe/", {}),
        ("/api/lane-probe/", {"HTTP_AUTHORIZATION": "Bearer ck_x"}),
        ("/lane-probe/", {"HTTP_AUTHORIZATION": "Api-Key ck_x"}),
    ],
    ids=["with a cookie", "no key", "another scheme", "outside the API"],
)
def test_every_other_request_takes_the_whole_chain(probe, url, headers):
    # when
    response = Client().get(url, **headers)
    # then
    assert response.json() == {"session": True, "user": True}


def test_key_on_the_lane_still_authenticates(api_client, tenant):
    # when: the real API, through the lane
    response = api_client.get("/api/v1/feature-tags/")
    # then
    assert response.status_code == 200
    assert "Set-Cookie" not in response


def test_staff_session_still_reaches_the_api(staff_session_client):
    # when: a browser session (a cookie) on a staff endpoint
    response = staff_session_client.get("/api/v1/costsim/status/")
    # then
    assert response.status_code == 200


def test_lane_without_its_end_is_a_configuration_error():
    # when / then
    with pytest.raises(ImproperlyConfigured):
        ApiKeyLaneMiddleware(lambda request: None)
