"""The API by resource: one `APIRouter` per module, included by `scalemart.api.create_app`."""
