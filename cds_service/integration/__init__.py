"""Tools for integration testers: offline evaluation, an EHR simulator, card rendering, --explain,
the fixture generator and the card preview page. Nothing here is on the request path of the service.
"""
