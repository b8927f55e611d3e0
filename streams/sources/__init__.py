"""Sources: files turned into topic messages (CSV in gapstream's own layout, CMS RIF)."""
