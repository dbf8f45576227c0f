"""Who did it: the actor strings recorded on lifecycle actions and audit rows.

A tenant API key records `api-key:<prefix>` (`ApiKey.actor`); a signed-in person, staff in
the admin or a session caller of the API, records `user:<username>`.
"""


def user_actor(request) -> str:
    """Actor string of the request's signed-in user, `user:<username>`."""
    return f"user:{request.user.get_username()}"
