"""The admin site of the operator console."""

from django.contrib import admin

# Where a ModelAdmin without `console_position` is listed: after every one that has it.
UNPLACED = 1_000


class ConsoleAdminSite(admin.AdminSite):
    """The stock admin, with the models an operator starts from listed first in their app.

    A ModelAdmin may set `console_position` (lower first); the others follow in the stock
    alphabetical order.
    """

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            # A stable sort: models with the same position keep their alphabetical order.
            app["models"].sort(key=lambda entry: self._console_position(entry["model"]))
        return app_list

    def _console_position(self, model) -> int:
        return getattr(self._registry.get(model), "console_position", UNPLACED)
