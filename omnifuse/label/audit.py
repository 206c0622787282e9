def audit(*a, **k):
    raise NotImplementedError
