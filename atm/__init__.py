"""The composition root: the ``atm`` command. It imports every part and nothing imports it."""
