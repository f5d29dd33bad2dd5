"""The incident beyond password resets: API keys, role and access audit, IP allow, the report, the checklist.

Core code: it never imports Textual.
"""
