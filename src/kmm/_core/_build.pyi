BUILD: str
COMPILED: bool
