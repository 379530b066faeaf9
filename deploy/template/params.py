"""The template's parameters (what `make deploy` fills), its conditions, and its outputs.

The outputs are what `deploy.stack` reads after a deploy: the interactions URL, the site, the queues.
"""

from __future__ import annotations

from deploy.template.cfn import Json, ref, sub
from deploy.template.stage import Stage

__all__ = ["conditions", "outputs", "parameters"]


def parameters(stage: Stage) -> Json:
    """The Discord application, the alarm mail, the site URL, the agent's wheelhouse, the IoT endpoint."""
    params: Json = {
        "DiscordPublicKey": {
            "Type": "String",
            "Default": stage.env.get("DISCORD_PUBLIC_KEY", ""),
            "AllowedPattern": "^([0-9a-fA-F]{64})?$",
            "Description": "The application's public key (Developer Portal, General Information)",
        },
        "DiscordApplicationId": {
            "Type": "String",
            "Default": stage.env.get("DISCORD_APPLICATION_ID", ""),
            "AllowedPattern": "^([0-9]{17,20})?$",
            "Description": "The application id (a snowflake)",
        },
        "AlarmEmail": {"Type": "String", "Default": "", "Description": "Where alarms are mailed (optional)"},
        "SiteUrl": {
            "Type": "String",
            "Default": "",
            "Description": "The SiteURL output (make deploy fills it)",
        },
        "AgentWheelhouse": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^(s3://[a-z0-9.-]{3,63}/agent/[0-9a-f]{64})?$",
            "Description": "s3://<artifacts bucket>/agent/<sha256>, the agent wheelhouse (make deploy)",
        },
        "IotDataEndpoint": {
            "Type": "String",
            "Default": "",
            "Description": "https://<prefix>-ats.iot.<region>.amazonaws.com (make deploy looks it up)",
        },
    }
    return params


def outputs() -> Json:
    """What the operator pastes (interactions URL) and what `make deploy` reads back."""
    return {
        "InteractionsEndpointURL": {
            "Description": "Paste into the Developer Portal: Interactions Endpoint URL",
            "Value": sub(
                "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api/discord/interactions"
            ),
        },
        "SiteURL": {"Value": sub("https://${SiteDistribution.DomainName}")},
        "SiteBucketName": {"Value": ref("SiteBucket")},
        "CustomerTemplateBucketName": {"Value": ref("CustomerTemplateBucket")},
        "SiteDistributionId": {"Value": ref("SiteDistribution")},
        "AlarmTopicArn": {"Value": ref("AlarmTopic")},
        "AgentEventsQueueUrl": {"Value": ref("AgentEventsQueue")},
        "InstancePolicyName": {"Value": ref("InstancePolicy")},
    }


def conditions() -> Json:
    """Mail alarms only when an address is given."""
    return {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}}
