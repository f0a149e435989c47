"""Templates -> text: the bounded Jinja2 sandbox, the template files it may read, the include
cache and the skeleton fast path, the Body a rendered part travels as, and what to do when a
registrant's message cannot be built."""
