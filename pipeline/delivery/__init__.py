"""Delivery mode: events in, one outcome per event out, with retries, rate limit and a ledger."""

from pipeline.delivery.engine import DeliveryOptions, deliver
from pipeline.delivery.incoming import Incoming, read_jsonl
from pipeline.delivery.outcome import Outcome, Summary

__all__ = ["DeliveryOptions", "Incoming", "Outcome", "Summary", "deliver", "read_jsonl"]
