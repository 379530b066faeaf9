"""Each domain package states its public surface in `__all__`; this pins it (lesson L12)."""

from __future__ import annotations

import importlib

import pytest

SURFACES = {
    "chalicelib.discord": {
        "ActionRow",
        "Autocomplete",
        "Button",
        "ButtonStyle",
        "CallbackType",
        "Choice",
        "Choices",
        "Command",
        "CommandRegistry",
        "Deferred",
        "Embed",
        "EmbedField",
        "Interaction",
        "InteractionEndpoint",
        "InteractionType",
        "Job",
        "Length",
        "Level",
        "LinkButton",
        "MessageFlag",
        "Modal",
        "OneOf",
        "Permission",
        "Range",
        "Reply",
        "Response",
        "RoleSelect",
        "Route",
        "SelectOption",
        "StringSelect",
        "TextInput",
        "Update",
        "callback_body",
        "error_reply",
        "load_verify_key",
        "message_body",
        "parse_interaction",
        "verify_request",
    },
    "chalicelib.games": {
        "GAME_NAME",
        "TRANSITIONS",
        "Game",
        "GameRecord",
        "GameResources",
        "GameSettings",
        "GameState",
        "GameStore",
        "SettingChanges",
        "WorkflowWait",
        "can_move",
        "check_name",
        "sources_of",
    },
    "chalicelib.tenancy": {
        "PLANS",
        "REGIONS",
        "AuditEntry",
        "AuditLog",
        "AuditRecord",
        "ClientHook",
        "CredentialsBroker",
        "Plan",
        "RoleKind",
        "Tenant",
        "TenantAccess",
        "TenantRecord",
        "TenantStore",
        "Usage",
        "Verifier",
        "VerifyResult",
        "check_role_arn",
        "level_of",
        "plan_named",
        "purge_tenant",
        "quick_create_link",
    },
    "chalicelib.jobs": {
        "Claim",
        "InteractionLedger",
        "InteractionRecord",
        "JobMessage",
        "JobRegistry",
        "JobRunner",
        "JobStatus",
        "SqsJobQueue",
    },
    "chalicelib.commands": {
        "Context",
        "GameName",
        "Services",
        "interaction_of_job",
        "jobs",
        "registry",
    },
}


@pytest.mark.parametrize("package", sorted(SURFACES))
def test_package_exports_exactly_its_public_surface(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == SURFACES[package]
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is exported but missing"
