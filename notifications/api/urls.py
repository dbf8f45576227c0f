from notifications.api import views


def register(router) -> list:
    return views.register(router)
