"""Request and response bodies. Patterns keep ids safe as Redis key parts (no `:`) and URL segments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

PRODUCT_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
USER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
IDEMPOTENCY_KEY = r"^[A-Za-z0-9_-]{8,128}$"
# Printable text only: control characters break log lines and some MongoDB-compatible backends.
NAME = r"^[^\x00-\x1f\x7f]{1,200}$"
MAX_PRICE = 1_000_000
MAX_STOCK = 1_000_000
MAX_QUANTITY = 100


def _json_integer(v: Any) -> Any:
    # JSON integers only (279.0 counts, as JSON Schema says); "5" and true are client bugs worth a 422.
    if isinstance(v, str | bool):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return v


def _json_number(v: Any) -> Any:
    # JSON numbers only: `true` would otherwise be a price of 1.00 and "9.99" a string the client meant as one.
    if isinstance(v, str | bool):
        raise ValueError("must be a JSON number, not a string or boolean")
    return v


Int = Annotated[int, BeforeValidator(_json_integer)]
Number = Annotated[float, BeforeValidator(_json_number)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _epoch(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return max(int(value.timestamp()), 0)


class SaleWindow(Strict):
    starts_at: datetime | None = Field(default=None, description="sale opens at (UTC when no offset is given)")
    ends_at: datetime | None = Field(default=None, description="sale closes at")

    @model_validator(mode="after")
    def _ordered(self) -> SaleWindow:
        if self.starts_at and self.ends_at and _epoch(self.ends_at) <= _epoch(self.starts_at):
            raise ValueError("ends_at must be later than starts_at")
        return self

    def epochs(self) -> tuple[int, int]:
        return _epoch(self.starts_at), _epoch(self.ends_at)


class ProductCreate(SaleWindow):
    id: str = Field(pattern=PRODUCT_ID, description="lowercase slug, e.g. `tv-55`")
    name: str = Field(pattern=NAME)
    price: Number = Field(ge=0.01, le=MAX_PRICE, description="in currency units, at most 2 decimals")
    stock: Int = Field(ge=0, le=MAX_STOCK, description="initial units")
    per_user_limit: Int | None = Field(
        default=None, ge=1, le=1000, description="units one user may buy; the server default when omitted"
    )
    open: bool = Field(default=False, strict=True, description="open the sale right away")

    @field_validator("price")
    @classmethod
    def _cents(cls, v: float) -> float:
        if round(v * 100) < 1:
            raise ValueError("must be at least 0.01")
        return v

    @property
    def price_cents(self) -> int:
        return round(self.price * 100)


class RestockIn(Strict):
    quantity: Int = Field(ge=1, le=MAX_STOCK, description="units to add")


class SaleIn(SaleWindow):
    action: Literal["open", "close"]


class BuyIn(Strict):
    user_id: str | None = Field(
        default=None, pattern=USER_ID, description="optional: the buyer is the token's user; a different one gets 403"
    )
    product_id: str = Field(pattern=PRODUCT_ID)
    quantity: Int = Field(ge=1, le=MAX_QUANTITY)
    idempotency_key: str = Field(
        pattern=IDEMPOTENCY_KEY, description="unique per purchase attempt; a replay returns the first answer"
    )


class TokenIn(Strict):
    user_id: str = Field(pattern=USER_ID)
    ttl_seconds: Int = Field(default=900, gt=0, le=30 * 86400, description="how long the token is valid")


class TokenOut(BaseModel):
    token: str
    user_id: str
    expires_at: datetime


class SaleOut(BaseModel):
    open: bool
    starts_at: datetime | None
    ends_at: datetime | None


class ProductOut(BaseModel):
    id: str
    name: str
    price: float
    per_user_limit: int
    stock_left: int | None = Field(description="null only when the stock store is unreachable and nothing is known")
    stocked: int | None = Field(description="initial stock plus restocks")
    sale: SaleOut
    on_sale: bool = Field(description="the sale is open now and stock is left")
    stale: bool = Field(description="served from the in-process fallback while Redis is unreachable")


class ProductList(BaseModel):
    products: list[ProductOut]
    stale: bool


class BuyOut(BaseModel):
    order_id: str
    status: Literal["accepted"]
    user_id: str
    product_id: str
    quantity: int
    unit_price: float
    total: float
    stock_left: int
    created_at: datetime


class OrderOut(BaseModel):
    order_id: str
    user_id: str
    product_id: str
    quantity: int
    unit_price: float
    total: float
    created_at: datetime


class OrdersOut(BaseModel):
    user_id: str
    source: Literal["redis", "mongodb"] = Field(
        description="redis: every accepted order, newest first; mongodb: persisted orders only (Redis is down)"
    )
    orders: list[OrderOut]


class ProductStats(BaseModel):
    product_id: str
    name: str
    orders: int
    units_sold: int
    revenue: float
    stocked: int | None
    stock_left: int | None
    sell_through: float | None = Field(description="(stocked - stock_left) / stocked")
    views: int
    conversion: float | None = Field(description="orders / views")


class StatsTotals(BaseModel):
    orders: int
    units_sold: int
    revenue: float
    views: int
    conversion: float | None
    queued_orders: int = Field(description="accepted orders the worker has not persisted yet")


class StatsOut(BaseModel):
    products: list[ProductStats]
    totals: StatsTotals


class ReconcileRow(BaseModel):
    product: str
    stocked: int
    left: int
    taken: int = Field(description="stocked - left")
    persisted: int = Field(description="units in the orders in MongoDB")
    queued: int = Field(description="units in orders the worker has not persisted yet")
    by_users: int = Field(description="sum of the per-user purchase counters")
    orders: int = Field(description="orders in MongoDB")
    problems: list[str]


class ReconcileOut(BaseModel):
    clean: bool
    products: list[ReconcileRow]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    error: str = Field(description="machine-readable code")
    message: str = Field(description="what went wrong and how to fix it")
    field: str | None = Field(default=None, description="the request field at fault, if any")
    errors: list[FieldError] | None = None
    details: dict[str, Any] | None = None


class Health(BaseModel):
    status: Literal["live", "ready", "not_ready"]
    checks: dict[str, str] | None = None
