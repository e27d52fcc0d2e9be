"""The browser UI: templates, static files and the routes that serve them."""
