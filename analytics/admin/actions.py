"""Admin actions that ask for a small form first (notes, a reason, a TTL).

As Django's own "delete selected" confirmation does: the first POST of the action shows the
form with the selection; its submit (`apply`) runs the action. Every app's consoles use this
one helper and the one template, `admin/action_form.html`.
"""

from collections.abc import Callable
from typing import Any

from django.contrib.admin import helpers
from django.template.response import TemplateResponse

ACTION_FORM_TEMPLATE = "admin/action_form.html"


def action_form(
    modeladmin,
    request,
    queryset,
    *,
    form_class,
    title: str,
    description: str,
    submit: str,
    help_texts: dict[str, str] | None = None,
    item_label: Callable[[Any], str] | None = None,
):
    """Show `form_class` for the selected rows; `(cleaned_data, None)` once submitted valid,
    else `(None, the form page)`.

    `help_texts` replaces fields' help texts; `item_label(row)`, when given, is how a selected
    row is listed (its `str` otherwise).
    """
    form = form_class(request.POST if "apply" in request.POST else None)
    for name, text in (help_texts or {}).items():
        form.fields[name].help_text = text
    if form.is_bound and form.is_valid():
        return form.cleaned_data, None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "description": description,
        "submit_label": submit,
        "form": form,
        "queryset": queryset,
        "item_labels": [item_label(row) for row in queryset] if item_label else None,
        "opts": modeladmin.model._meta,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return None, TemplateResponse(request, ACTION_FORM_TEMPLATE, context)
