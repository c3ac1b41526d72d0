"""Writing a :class:`~.spec.TemplateSpec` as a Jinja chat template (transformers' conventions:
``messages``, ``tools``, ``add_generation_prompt``, ``strftime_now``).

:func:`template_source` writes the whole template; the other functions are its parts (a
header, a message end, the generation prompt, the tool-call statements), and
:func:`after_last_message` is the constant text after the last message. Every function reads the
spec's flags only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .vocab import CLOCK_FORMAT, HEADERS, ROLE_MAP_JINJA, ROLE_TOKENS, THINK_OPEN, jinja_literal

if TYPE_CHECKING:
    from .spec import TemplateSpec

__all__ = [
    "after_last_message",
    "calls_jinja",
    "end_expr",
    "end_text",
    "generation_prompt",
    "header_expr",
    "template_source",
]


def header_expr(spec: TemplateSpec, role_expr: str) -> str:
    """A Jinja expression: the header of the role ``role_expr`` (itself an expression)."""
    sep = "'\\n' + " if spec.sep_before else ""
    if spec.header == "roletok":
        return f"{sep}{ROLE_MAP_JINJA}[{role_expr}] + '\\n'"
    before, after = HEADERS[spec.header][0].split("{role}")
    return f"{sep}{jinja_literal(before)} + {role_expr} + {jinja_literal(after)}"


def end_text(spec: TemplateSpec) -> str:
    """The text that ends a message (before the suffix): per ``spec.end``, the stop token, the
    stop token and ``\\n``, ``\\n`` stop token ``\\n``, or nothing (``next``)."""
    stop = spec.stop
    return {"stop": stop, "stop_nl": f"{stop}\n", "nl_stop": f"\n{stop}\n", "next": ""}[spec.end]


def end_expr(spec: TemplateSpec) -> str:
    """A Jinja string literal: a message's end followed by the constant suffix."""
    return jinja_literal(end_text(spec) + spec.suffix)


def after_last_message(spec: TemplateSpec) -> str:
    """The constant text the template writes after the last message's end (and suffix): the
    trailing system turn, then the generation prompt when it is always written."""
    out = ""
    if spec.trailing_turn:
        sep = "\n" if spec.sep_before else ""
        head = ROLE_TOKENS["system"] + "\n" if spec.header == "roletok" else HEADERS[spec.header][0].format(role="system")
        out += sep + head + "Answer briefly." + end_text(spec) + spec.suffix
    return out + (generation_prompt(spec) if spec.always_gen else "")


def generation_prompt(spec: TemplateSpec) -> str:
    """The text of the generation prompt: separator, assistant header, then the reasoning opener
    (``gen_think``) or the closed empty reasoning block (``closed_think``)."""
    sep = "\n" if spec.sep_before and spec.sep_before_gen else ""
    if spec.header == "roletok":
        head = ROLE_TOKENS["assistant"] + "\n"
    else:
        before, after = HEADERS[spec.header][0].split("{role}")
        head = before + "assistant" + after
    return sep + head + (THINK_OPEN if spec.gen_think else "") + ("<think></think>" if spec.closed_think else "")


def calls_jinja(spec: TemplateSpec, c: str = "c") -> str:
    """Jinja statements setting ``ns.calls`` to message ``m``'s tool calls (after content ``c``,
    a Jinja variable name), in ``spec.tool_format``; ``''`` when the template renders no tools."""
    if not spec.tools:
        return "{%- set ns.calls = '' %}"
    out = ["{%- set ns.calls = '' %}", "{%- for tc in (m.tool_calls or []) %}",
           "{%- set f = tc.function if tc.function is defined else tc %}"]
    if spec.tool_format == "json":
        args = {"dict": "f.arguments|tojson", "string": "f.arguments",
                "auto": "(f.arguments if f.arguments is string else f.arguments|tojson)"}[spec.args]
        out.append("{%- if " + c + " or not loop.first %}{%- set ns.calls = ns.calls + '\\n' %}{%- endif %}")
        out.append("{%- set ns.calls = ns.calls + '<tool_call>\\n{\"name\": \"' + f.name + '\", \"arguments\": ' + "
                   + args + " + '}\\n</tool_call>' %}")
    elif spec.tool_format == "xml":
        out.append("{%- if " + c + " or not loop.first %}{%- set ns.calls = ns.calls + '\\n' %}{%- endif %}")
        out.append("{%- set ns.calls = ns.calls + '<tool_call>\\n<function=' + f.name + '>\\n' %}")
        out.append("{%- for k, v in f.arguments.items() %}{%- set ns.calls = ns.calls + '<parameter=' + k + '>\\n'"
                   " + (v if v is string else v|tojson) + '\\n</parameter>\\n' %}{%- endfor %}")
        out.append("{%- set ns.calls = ns.calls + '</function>\\n</tool_call>' %}")
    else:  # python
        out.append("{%- if loop.first %}{%- set ns.calls = ns.calls + ('\\n[' if " + c + " else '[') %}"
                   "{%- else %}{%- set ns.calls = ns.calls + ', ' %}{%- endif %}")
        out.append("{%- set ns.calls = ns.calls + f.name + '(' %}")
        out.append("{%- for k, v in f.arguments.items() %}{%- if not loop.first %}{%- set ns.calls = ns.calls + ', ' %}"
                   "{%- endif %}{%- set ns.calls = ns.calls + k + '=' + v|tojson %}{%- endfor %}")
        out.append("{%- set ns.calls = ns.calls + ')' %}{%- if loop.last %}{%- set ns.calls = ns.calls + ']' %}{%- endif %}")
    out.append("{%- endfor %}")
    return "".join(out)


def template_source(spec: TemplateSpec) -> str:
    """The Jinja chat template with ``spec``'s behaviours (transformers' conventions), one
    statement block per line."""
    end = end_expr(spec)
    s = _prelude(spec)
    s += _system_block(spec, end)
    s += _message_loop_head(spec)
    s += _user_and_tool_branches(spec, end)
    s += _assistant_branch(spec, end)
    s.append("{%- endif %}{%- endfor %}")
    if spec.trailing_turn:
        s.append("{{- " + header_expr(spec, "'system'") + " + 'Answer briefly.' + " + end + " }}")
    gen = "{{- " + jinja_literal(generation_prompt(spec)) + " }}"
    s.append(gen if spec.always_gen else "{%- if add_generation_prompt %}" + gen + "{%- endif %}")
    return "\n".join(s)


def _prelude(spec: TemplateSpec) -> list[str]:
    """The namespace, the last user / final-answer indices and the first system message."""
    last_user = "{%- if x.role == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}"
    scan = []
    if spec.last_user_scan == "reverse":  # Qwen3's form: stops mattering once the flag is cleared
        last_user = ""
        scan = ["{%- for x in messages[::-1] %}{%- set j = (messages|length - 1) - loop.index0 %}"
                "{%- if ns.scanning and x.role == 'user' %}{%- set ns.scanning = false %}{%- set ns.last_user = j %}{%- endif %}"
                "{%- endfor %}"]
    return [
        "{%- set ns = namespace(last_user=-1, last_final=-1, calls='', think='', scanning=true) %}",
        *scan,
        "{%- for x in messages %}" + last_user +
        "{%- if x.role == 'assistant' and not x.tool_calls %}{%- set ns.last_final = loop.index0 %}{%- endif %}{%- endfor %}",
        "{%- set first_system = messages and messages[0].role == 'system' %}",
        "{%- set sys = (messages[0].content if messages[0].content is string else '') if first_system else '' %}",
    ]


def _system_block(spec: TemplateSpec, end: str) -> list[str]:
    """The system header block: clock, tool schemas, the system prompt (when written there)."""
    s: list[str] = []
    preamble = []
    if spec.clock:
        preamble.append(f"'Current time: ' + strftime_now({jinja_literal(CLOCK_FORMAT)}) + '\\n'")
    cond = ["tools"] if spec.tools else []
    if spec.clock:
        cond.append("true")
    if not spec.system_to_last_user:
        cond.append("first_system")
    if cond:
        s.append("{%- if " + " or ".join(cond) + " %}{{- " + header_expr(spec, "'system'") + " }}")
        if spec.clock:
            s.append("{{- " + preamble[0] + " }}")
        if spec.tools:
            s.append("{%- if tools %}{{- '# Tools\\n' }}{%- for t in tools %}{{- t|tojson + '\\n' }}{%- endfor %}{%- endif %}")
        if not spec.system_to_last_user:
            s.append("{{- sys }}")
        s.append("{{- " + end + " }}{%- endif %}")
    return s


def _message_loop_head(spec: TemplateSpec) -> list[str]:
    """The loop over messages after the first system one: ``m``, ``prev``, ``nxt`` and content ``c``."""
    trim = "|trim" if spec.trim else ""
    return [
        "{%- for i in range(1 if first_system else 0, messages|length) %}{%- set m = messages[i] %}",
        "{%- set prev = messages[i - 1].role if i > 0 else '' %}"
        "{%- set nxt = messages[i + 1].role if i + 1 < messages|length else '' %}",
        f"{{%- set c = (m.content if m.content is string else ''){trim} %}}",
    ]


def _user_and_tool_branches(spec: TemplateSpec, end: str) -> list[str]:
    """The ``user``/``system`` branch and the ``tool`` branch of the message loop."""
    s = ["{%- if m.role == 'user' or m.role == 'system' %}"]
    if spec.system_to_last_user:
        s.append("{%- if i == ns.last_user and sys %}{%- set c = sys + '\\n\\n' + c %}{%- endif %}")
    s.append("{{- " + header_expr(spec, "m.role") + " + c + " + end + " }}")
    s.append("{%- elif m.role == 'tool' %}")
    body = "'<tool_response>\\n' + c + '\\n</tool_response>'"
    if spec.merge == "tools":
        s.append("{%- if prev == 'tool' %}{{- '\\n' }}{%- else %}{{- " + header_expr(spec, "'tool'") + " }}{%- endif %}")
        s.append("{{- " + body + " }}{%- if nxt != 'tool' %}{{- " + end + " }}{%- endif %}")
    else:
        s.append("{{- " + header_expr(spec, "'tool'") + " + " + body + " + " + end + " }}")
    return s


def _assistant_branch(spec: TemplateSpec, end: str) -> list[str]:
    """The ``assistant`` branch: reasoning block, tool calls, split or merged blocks."""
    trim = "|trim" if spec.trim else ""
    keep = {"none": "true", "before_last_user": "i > ns.last_user", "after_final": "i >= ns.last_final"}[spec.drop]
    key = jinja_literal(spec.reasoning_key)
    s = ["{%- elif m.role == 'assistant' %}", "{%- set ns.think = '' %}"]
    if spec.reasoning == "think":
        s.append(f"{{%- if ({keep}) and m[{key}] is defined and m[{key}] is not none %}}"
                 f"{{%- set ns.think = '<think>\\n' + m[{key}]{trim} + '\\n</think>\\n\\n' %}}")
        if spec.think_always:
            s.append(f"{{%- elif {keep} %}}{{%- set ns.think = '<think>\\n\\n</think>\\n\\n' %}}")
        s.append("{%- endif %}")
    s.append(calls_jinja(spec))
    head = header_expr(spec, "'assistant'") + (" + '</think>'" if spec.closed_think else "")
    if spec.split:
        s.append("{%- if c and ns.calls %}")
        s.append("{%- set c2 = '' %}")
        s.append("{{- " + head + " + ns.think + c + " + end + " }}")
        s.append(calls_jinja(spec, "c2"))
        s.append("{{- " + head + " + ns.calls + " + end + " }}")
        s.append("{%- else %}")
    if spec.merge == "assistant":
        s.append("{%- if prev == 'assistant' %}{{- '\\n' }}{%- else %}{{- " + head + " }}{%- endif %}")
        s.append("{{- ns.think + c + ns.calls }}{%- if nxt != 'assistant' %}{{- " + end + " }}{%- endif %}")
    else:
        s.append("{{- " + head + " + ns.think + c + ns.calls + " + end + " }}")
    if spec.split:
        s.append("{%- endif %}")
    return s
