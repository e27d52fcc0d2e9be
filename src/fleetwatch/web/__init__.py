"""The browser UI: templates, static files and the routes that serve them. An adapter: may
import api/ (its sign-in and error answers), fleet/ and the services; only `app.py` imports it."""
