"""The web pages: server-rendered HTML (Jinja2) for every role, signed in per user, on top of the same
services and visibility rules as the JSON API. See `creditflow.web.pages`."""
