"""Masking: a conversation rendered through its chat template, the assistant turns located in the text,
tokenized, and turned into rows (``input_ids``/``labels``, linear or a prefix tree).

Modules, in the order a row goes through them: ``template_env``/``template`` (the sandboxed jinja
environment and the compiled template), ``render_memo``/``render_limits``/``format_size``/``row_budget``
(bounded, memoised rendering), ``stop_tokens``/``control_tokens`` (the tokens a turn ends with, control
strings in user text), ``render`` (a conversation -> text + turn spans), ``turn_location`` (where each
turn is), ``tokenizer`` (loading a tokenizer and its template), ``segments`` (text -> token ids, span by
span), ``tree``/``tree_arrays`` (prefix-tree rows and their array form), ``tree_fit`` (a tree over
``max_length`` split into sub-trees), ``encode`` (all of it for one conversation), ``turn_check``
(every trained path checked against a plain tokenization). See docs/architecture.md and docs/masking.md.
"""
