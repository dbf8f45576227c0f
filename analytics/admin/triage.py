"""Triage from the changelist (bulk actions) and of one object from its detail page.

Shared by the anomaly and incident consoles. An admin mixes in `BulkTriageActionsMixin` and
names its three bulk action bodies; it mixes in `DetailTriageMixin`, says which close forms and
label buttons it offers, and implements the three `triage_*` hooks with its single-object
lifecycle services. Every change is a POST with the CSRF token; the views report
the outcome as a message and return to the detail page. A transition that the status does not
allow (acknowledging or closing something already closed, perhaps by another operator a moment
ago) is shown as an error message, not a 409 page.
"""

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from analytics.actors import user_actor
from analytics.admin.actions import action_form
from analytics.errors import DomainError
from analytics.models import AnomalyStatus, FeedbackLabel
from analytics.services.anomaly_lifecycle import CLOSED_STATUSES

OBJECT_FORM_TEMPLATE = "admin/object_action_form.html"


# --- The messages of the bulk action bodies; `noun` is the count noun, "incident(s)" -------


def acknowledged_message(counts: dict, noun: str) -> str:
    text = f"{counts['acknowledged']} {noun} acknowledged"
    if counts["unchanged"]:
        text += f", {counts['unchanged']} already acknowledged"
    if counts["conflicts"]:
        text += f", {counts['conflicts']} already resolved or dismissed (left as they are)"
    return text + "."


def closed_message(counts: dict, noun: str, resolution: str) -> str:
    text = f"{counts['changed']} {noun} {resolution}"
    if counts["conflicts"]:
        text += f", {counts['conflicts']} already resolved or dismissed (left as they are)"
    return text + "."


def labelled_message(counts: dict, noun: str, label: str) -> str:
    return f"{counts['labelled']} {noun} labelled {label}."


class CloseNotesForm(forms.Form):
    # The help text is the admin's: `bulk_notes_help_text`, `notes_help_text`.
    notes = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 4, "cols": 80})
    )


class ResolveOneForm(CloseNotesForm):
    resolution = forms.ChoiceField(
        choices=[
            (AnomalyStatus.RESOLVED.value, "Resolved: a real problem, now handled"),
            (AnomalyStatus.DISMISSED.value, "Dismissed: not worth acting on"),
        ],
        initial=AnomalyStatus.RESOLVED.value,
        widget=forms.RadioSelect,
    )
    field_order = ["resolution", "notes"]


class BulkTriageActionsMixin:
    """The changelist's triage actions: acknowledge, resolve or dismiss with notes, label.

    The admin names the bulk action bodies as static methods, `(request, queryset, ...)` ->
    `(counts, message)`, and the count noun of the notes form's title; the action descriptions
    take the model's verbose names. The actions need `has_triage_permission`.
    """

    actions = (
        "acknowledge_selected",
        "resolve_selected",
        "dismiss_selected",
        "label_yes",
        "label_no",
        "label_planned_activity",
    )
    bulk_count_noun = ""  # "incident(s)": the notes form's title, "Resolve 3 incident(s)"
    bulk_notes_help_text = (
        "Stored as the resolution notes of every selected object (up to 2000 chars)."
    )
    # Above the notes form, a format_html() string with {resolution}.
    bulk_close_description = ""

    def bulk_item_label(self, obj) -> str:
        """One selected object's line on the notes form."""
        return str(obj)

    # --- the bulk action bodies; an admin sets them to staticmethod(<helper>) ---

    @staticmethod
    def bulk_acknowledge(request, queryset) -> tuple[dict, str]:
        raise NotImplementedError

    @staticmethod
    def bulk_close(request, queryset, *, resolution: str, notes: str = "") -> tuple[dict, str]:
        raise NotImplementedError

    @staticmethod
    def bulk_label(request, queryset, *, label: str) -> tuple[dict, str]:
        raise NotImplementedError

    # --- actions ---

    @admin.action(
        description="Acknowledge selected %(verbose_name_plural)s", permissions=["triage"]
    )
    def acknowledge_selected(self, request, queryset):
        _, text = self.bulk_acknowledge(request, queryset)
        self.message_user(request, text, messages.SUCCESS)

    @admin.action(description="Resolve selected %(verbose_name_plural)s…", permissions=["triage"])
    def resolve_selected(self, request, queryset):
        return self._close_with_notes(request, queryset, AnomalyStatus.RESOLVED)

    @admin.action(description="Dismiss selected %(verbose_name_plural)s…", permissions=["triage"])
    def dismiss_selected(self, request, queryset):
        return self._close_with_notes(request, queryset, AnomalyStatus.DISMISSED)

    @admin.action(description="Label selected: real %(verbose_name)s (YES)", permissions=["triage"])
    def label_yes(self, request, queryset):
        self._label(request, queryset, FeedbackLabel.YES)

    @admin.action(description="Label selected: false alarm (NO)", permissions=["triage"])
    def label_no(self, request, queryset):
        self._label(request, queryset, FeedbackLabel.NO)

    @admin.action(description="Label selected: planned activity", permissions=["triage"])
    def label_planned_activity(self, request, queryset):
        self._label(request, queryset, FeedbackLabel.PLANNED_ACTIVITY)

    def _label(self, request, queryset, label):
        _, text = self.bulk_label(request, queryset, label=label)
        self.message_user(request, text, messages.SUCCESS)

    def _close_with_notes(self, request, queryset, resolution):
        """First pass shows a notes form for the selection; its submit applies the action."""
        verb = "Resolve" if resolution == AnomalyStatus.RESOLVED else "Dismiss"
        data, page = action_form(
            self,
            request,
            queryset.select_related("tenant"),
            form_class=CloseNotesForm,
            title=f"{verb} {queryset.count()} {self.bulk_count_noun}",
            description=format_html(self.bulk_close_description, resolution=resolution),
            submit=verb,
            help_texts={"notes": self.bulk_notes_help_text},
            item_label=self.bulk_item_label,
        )
        if page is not None:
            return page
        _, text = self.bulk_close(request, queryset, resolution=resolution, notes=data["notes"])
        self.message_user(request, text, messages.SUCCESS)
        return None


@dataclass(frozen=True)
class CloseLink:
    """A detail-page link to a notes form that closes the object.

    `resolution` None lets the operator choose resolved or dismissed in the form.
    """

    verb: str
    text: str
    resolution: str | None = None


@dataclass(frozen=True)
class Tool:
    """One entry of the detail page's object tools: a link, or a POST button (`post`)."""

    id: str
    text: str
    url: str
    post: bool = False
    name: str = ""
    value: str = ""
    current: bool = False


class DetailTriageMixin:
    """Per-object triage views and the buttons that reach them (`triage_tools` in the context).

    Buttons that do not apply are left out: acknowledge only while open, the close forms only
    while open or acknowledged; a label can be given, or changed, in any status.
    """

    close_links: tuple[CloseLink, ...] = ()
    label_buttons: tuple[tuple[str, str], ...] = ()  # (FeedbackLabel value, button text)
    notes_help_text = "Stored as the resolution notes (up to 2000 chars)."

    # --- hooks: call the single-object service; raise a DomainError when the status forbids it ---

    def triage_acknowledge(self, obj, *, actor: str):
        raise NotImplementedError

    def triage_resolve(self, obj, *, actor: str, resolution: str, notes: str):
        raise NotImplementedError

    def triage_label(self, obj, *, actor: str, label: str):
        raise NotImplementedError

    def has_triage_permission(self, request) -> bool:
        raise NotImplementedError

    # --- urls and buttons ---

    def get_urls(self):
        urls = [self._triage_path("acknowledge", self.acknowledge_view)]
        urls += [
            self._triage_path(
                link.verb, self.close_view, {"verb": link.verb, "resolution": link.resolution}
            )
            for link in self.close_links
        ]
        if self.label_buttons:
            urls.append(self._triage_path("label", self.label_view))
        return [*urls, *super().get_urls()]

    def _triage_path(self, verb: str, view, kwargs: dict | None = None):
        return path(
            f"<path:object_id>/{verb}/",
            self.admin_site.admin_view(view),
            kwargs,
            name=self._url_name(verb),
        )

    def _url_name(self, verb: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{verb}"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["triage_tools"] = self.triage_tools(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def triage_tools(self, request, obj) -> list[Tool]:
        if not self.has_triage_permission(request):
            return []
        prefix = self.opts.model_name

        def url(verb: str) -> str:
            return reverse(f"admin:{self._url_name(verb)}", args=[obj.pk])

        tools = []
        if obj.status == AnomalyStatus.OPEN:
            tools.append(
                Tool(f"{prefix}-acknowledge", "Acknowledge", url("acknowledge"), post=True)
            )
        if obj.status not in CLOSED_STATUSES:
            tools += [Tool(f"{prefix}-{c.verb}", c.text, url(c.verb)) for c in self.close_links]
        tools += [
            Tool(
                f"{prefix}-label-{label.lower().replace('_', '-')}",
                text,
                url("label"),
                post=True,
                name="label",
                value=label,
                current=obj.feedback_label == label,
            )
            for label, text in self.label_buttons
        ]
        return tools

    # --- views ---

    def acknowledge_view(self, request, object_id):
        if request.method != "POST":
            return self._back_to(object_id)
        obj = self._triage_target(request, object_id)
        return self._apply(
            request,
            obj,
            lambda: self.triage_acknowledge(obj, actor=user_actor(request)),
            "acknowledged",
        )

    def close_view(self, request, object_id, verb: str, resolution: str | None):
        """The notes form (GET) and its submission; `resolution` None offers both in the form."""
        obj = self._triage_target(request, object_id)
        form_class = ResolveOneForm if resolution is None else CloseNotesForm
        form = form_class(request.POST if request.method == "POST" else None)
        form.fields["notes"].help_text = self.notes_help_text
        if form.is_bound and form.is_valid():
            chosen = resolution or form.cleaned_data["resolution"]
            return self._apply(
                request,
                obj,
                lambda: self.triage_resolve(
                    obj,
                    actor=user_actor(request),
                    resolution=chosen,
                    notes=form.cleaned_data["notes"],
                ),
                chosen,
            )
        action = {
            None: "Resolve or dismiss",
            AnomalyStatus.RESOLVED: "Resolve",
            AnomalyStatus.DISMISSED: "Dismiss",
        }[resolution]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action}: {obj}",
            "crumb": action,
            "description": self.triage_description(obj),
            "opts": self.opts,
            "original": obj,
            "form": form,
            "form_id": f"{self.opts.model_name}-{verb}-form",
            "submit_id": f"{self.opts.model_name}-{verb}-submit",
            "submit_label": "Save resolution" if resolution is None else action,
        }
        return TemplateResponse(request, OBJECT_FORM_TEMPLATE, context)

    def label_view(self, request, object_id):
        if request.method != "POST":
            return self._back_to(object_id)
        obj = self._triage_target(request, object_id)
        label = request.POST.get("label", "")
        if label not in dict(self.label_buttons):
            self.message_user(request, f"Unknown feedback label {label!r}.", messages.ERROR)
            return self._back_to(obj.pk)
        return self._apply(
            request,
            obj,
            lambda: self.triage_label(obj, actor=user_actor(request), label=label),
            f"labelled {label}",
        )

    def triage_description(self, obj) -> str:
        """What the notes form says about the object above the form."""
        return str(obj)

    def _apply(self, request, obj, change, outcome: str):
        try:
            change()
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            name = capfirst(self.opts.verbose_name)
            self.message_user(request, f"{name} {obj.pk} {outcome}.", messages.SUCCESS)
        return self._back_to(obj.pk)

    def _back_to(self, object_id) -> HttpResponseRedirect:
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
        )

    def _triage_target(self, request, object_id):
        if not self.has_triage_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"{capfirst(self.opts.verbose_name)} {object_id!r} does not exist.")
        return obj
