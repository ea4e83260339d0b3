"""Security scans of the platform: dependencies, containers, code, compliance, reports."""

from titans.security.scanner import SecurityScanner

__all__ = ["SecurityScanner"]
