"""Source adapters, one small class per kind, registered in ``sources.registry``."""
