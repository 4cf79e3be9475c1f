"""Ids that factories choose for their factories and products: 1-64 letters, digits, '.', '_', ':' or '-'."""

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
