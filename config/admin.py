"""The admin site of the operator console."""

from django.contrib import admin
from django.urls import reverse_lazy

# Where a ModelAdmin without `console_position` is listed: after every one that has it.
UNPLACED = 1_000


class ConsoleAdminSite(admin.AdminSite):
    """The stock admin, branded costwise, opening on the spend overview.

    The index is the overview (`analytics.admin.overview`), with the console's models below
    it; "View site" leads there too, as does `/`. A ModelAdmin may set `console_position`
    (lower first) to be listed before the others of its app, which follow in the stock
    alphabetical order.
    """

    site_header = "costwise"
    site_title = "costwise console"
    index_title = "Overview"
    site_url = reverse_lazy("admin:index")
    # The overview lists every model; without the sidebar a list page has the whole width of
    # a 1366 px screen for its columns.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        # Imported here: the admin site is built before the apps' admin modules are loaded.
        from analytics.admin.overview import overview_view

        return overview_view(self, request, extra_context)

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            # A stable sort: models with the same position keep their alphabetical order.
            app["models"].sort(key=lambda entry: self._console_position(entry["model"]))
        return app_list

    def _console_position(self, model) -> int:
        return getattr(self._registry.get(model), "console_position", UNPLACED)
