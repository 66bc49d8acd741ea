"""Routing rules: which topics become which events, and how their fields are computed."""

from consumer.routing.route import ImageUnavailablePolicy, MessageFormat, NoImagePolicy, Route
from consumer.routing.router import Router
from consumer.routing.spec import RoutingTable, UnroutedPolicy, load_routes, parse_routes

__all__ = [
    "ImageUnavailablePolicy",
    "MessageFormat",
    "NoImagePolicy",
    "Route",
    "Router",
    "RoutingTable",
    "UnroutedPolicy",
    "load_routes",
    "parse_routes",
]
