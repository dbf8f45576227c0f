"""Routes of this app: viewsets go on the shared router, other views are returned as paths."""


def register(router) -> list:
    return []
