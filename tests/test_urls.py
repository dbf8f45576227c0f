"""The project's own routes (config/urls.py)."""

import pytest


@pytest.mark.django_db
def test_root_redirects_to_the_admin_console(client):
    # when
    response = client.get("/")
    # then
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
def test_root_leads_an_anonymous_visitor_to_the_admin_login(client):
    # when
    response = client.get("/", follow=True)
    # then
    assert response.redirect_chain[-1] == ("/admin/login/?next=/admin/", 302)
    assert response.status_code == 200
