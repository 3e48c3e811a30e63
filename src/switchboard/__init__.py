"""Switchboard: a self-hosted, multi-tenant event hub."""
