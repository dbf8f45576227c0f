from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_operator_is_created_once_with_a_printed_password(client):
    # when
    first, second = StringIO(), StringIO()
    call_command("create_operator", stdout=first)
    call_command("create_operator", stdout=second)
    # then
    username, password = first.getvalue().strip().split("Admin login: ")[1].split(" / ")
    user = get_user_model().objects.get(username=username)
    assert user.is_staff and user.is_superuser
    assert client.login(username=username, password=password)
    assert "exists" in second.getvalue()
    assert get_user_model().objects.count() == 1
