"""One module per benchmark family, each defining ``FAMILY`` (a ``runner.tasks.family.Family``).

``runner.tasks.registry`` finds every module here by itself: adding a family is adding a module.
"""
