"""JSON rendering that writes money (Decimal) as exact JSON numbers: 12.5, 3, 0."""

import json
import re
from decimal import Decimal

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

from analytics.money import plain_decimal

# Decimals travel through json.dumps as tagged strings and are unwrapped afterwards, because
# the json module offers no way to emit a raw number literal (float would lose digits).
_TAG = "\u0000dec:"
_TAGGED = re.compile(r'"\\u0000dec:(-?\d+(?:\.\d+)?)"')


class _MoneyEncoder(JSONEncoder):
    def default(self, obj):
        if isinstance(obj, Decimal):
            return _TAG + plain_decimal(obj)
        return super().default(obj)


class MoneyJSONRenderer(JSONRenderer):
    encoder_class = _MoneyEncoder

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        text = json.dumps(data, cls=self.encoder_class, ensure_ascii=True, separators=(",", ":"))
        return _TAGGED.sub(r"\1", text).encode()
