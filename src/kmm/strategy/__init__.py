"""Quoting strategies (Avellaneda-Stoikov, inside-the-spread maker) and the external alpha slot."""
