"""Where memories come from: the inbox, file importers and the PostgreSQL source."""
