"""Templates -> text: the bounded Jinja2 sandbox, the template files it may read, and what
to do when a registrant's message cannot be built."""
