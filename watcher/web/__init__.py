"""The web: public pages, feeds, JSON API, admin, health."""
