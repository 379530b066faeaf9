"""The web page's hosting: a private S3 bucket behind CloudFront, with security headers; and the bucket
that publishes the customer role template where CloudFormation's quick-create link can read it.

Only CloudFront reads the site bucket (origin access control); the page may talk only to itself and the
API. CloudFormation accepts only an S3 https URL as a template URL (not CloudFront's), and fetches it with
the caller's identity in the customer's own account, so that one object is public: it holds nothing but
`policies/customer-role.yaml`, which is in this repository anyway.
"""

from __future__ import annotations

from typing import Final

from deploy.template.cfn import Json, att, ref, sub
from deploy.template.stage import Stage

__all__ = ["CUSTOMER_TEMPLATE_KEY", "customer_template_url", "site_resources"]

# The object /setup's quick-create link points at (make deploy uploads policies/customer-role.yaml there).
CUSTOMER_TEMPLATE_KEY: Final = "gangway-customer-role.yaml"


def customer_template_url() -> Json:
    """The template's S3 object URL, the form CloudFormation accepts: https://<bucket>.s3.<region>.<suffix>/<key>."""
    return sub(
        f"https://${{CustomerTemplateBucket}}.s3.${{AWS::Region}}.${{AWS::URLSuffix}}/{CUSTOMER_TEMPLATE_KEY}"
    )


# CloudFront's managed cache policy "CachingOptimized" (CloudFront developer guide, managed cache policies).
_CACHING_OPTIMIZED: Final = "658327ea-f89d-4fab-a63d-7e88639e58f6"
# The page only talks to itself and to the API: every other source is shut.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "manifest-src 'self'; worker-src 'self'; "
    "connect-src 'self' https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)


def site_resources(stage: Stage) -> Json:
    """The bucket, its policy, the origin access control, the headers policy and the distribution."""
    return {
        "SiteBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "Tags": [{"Key": "gangway:stage", "Value": stage.name}],
            },
        },
        "SiteBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("SiteBucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudFrontReadsThroughOAC",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudfront.amazonaws.com"},
                            "Action": ["s3:GetObject"],
                            "Resource": sub("${SiteBucket.Arn}/*"),
                            "Condition": {
                                "StringEquals": {
                                    "AWS:SourceArn": sub(
                                        "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${SiteDistribution}"
                                    )
                                }
                            },
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [att("SiteBucket", "Arn"), sub("${SiteBucket.Arn}/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        "CustomerTemplateBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                # Public reads only through the policy below (one object); ACLs stay off.
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": False,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": False,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "Tags": [{"Key": "gangway:stage", "Value": stage.name}],
            },
        },
        "CustomerTemplateBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("CustomerTemplateBucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AnyAccountsCloudFormationReadsTheRoleTemplate",
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": ["s3:GetObject"],
                            "Resource": sub(f"${{CustomerTemplateBucket.Arn}}/{CUSTOMER_TEMPLATE_KEY}"),
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [
                                att("CustomerTemplateBucket", "Arn"),
                                sub("${CustomerTemplateBucket.Arn}/*"),
                            ],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        "SiteOriginAccessControl": {
            "Type": "AWS::CloudFront::OriginAccessControl",
            "Properties": {
                "OriginAccessControlConfig": {
                    "Name": f"{stage.prefix}-site",
                    "OriginAccessControlOriginType": "s3",
                    "SigningBehavior": "always",
                    "SigningProtocol": "sigv4",
                }
            },
        },
        "SiteSecurityHeaders": {
            "Type": "AWS::CloudFront::ResponseHeadersPolicy",
            "Properties": {
                "ResponseHeadersPolicyConfig": {
                    "Name": f"{stage.prefix}-security-headers",
                    "SecurityHeadersConfig": {
                        "ContentSecurityPolicy": {"ContentSecurityPolicy": sub(_CSP), "Override": True},
                        "StrictTransportSecurity": {
                            "AccessControlMaxAgeSec": 63072000,
                            "IncludeSubdomains": True,
                            "Preload": True,
                            "Override": True,
                        },
                        "ContentTypeOptions": {"Override": True},
                        "FrameOptions": {"FrameOption": "DENY", "Override": True},
                        # IP links carry a token in the URL: never send it on as a referrer.
                        "ReferrerPolicy": {"ReferrerPolicy": "no-referrer", "Override": True},
                    },
                }
            },
        },
        "SiteDistribution": {
            "Type": "AWS::CloudFront::Distribution",
            "Properties": {
                "DistributionConfig": {
                    "Comment": f"{stage.prefix} site",
                    "Enabled": True,
                    "DefaultRootObject": "index.html",
                    "HttpVersion": "http2and3",
                    "IPV6Enabled": True,
                    "PriceClass": "PriceClass_100",
                    "Origins": [
                        {
                            "Id": "site",
                            "DomainName": att("SiteBucket", "RegionalDomainName"),
                            "OriginAccessControlId": att("SiteOriginAccessControl", "Id"),
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                    "DefaultCacheBehavior": {
                        "TargetOriginId": "site",
                        "ViewerProtocolPolicy": "redirect-to-https",
                        "AllowedMethods": ["GET", "HEAD"],
                        "CachedMethods": ["GET", "HEAD"],
                        "Compress": True,
                        "CachePolicyId": _CACHING_OPTIMIZED,
                        "ResponseHeadersPolicyId": ref("SiteSecurityHeaders"),
                    },
                }
            },
        },
    }
