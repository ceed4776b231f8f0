// Focused tests of the Jinja interpreter. Every expected string here is what jinja2 3.1.6
// renders for the same template and variables (in the environment named: "plain" is jinja2's
// defaults, "hf" is Hugging Face's trim_blocks + lstrip_blocks sandbox with loopcontrols and
// its tojson).
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_parser.h"

namespace nanovllm::jinja {
namespace {

std::string render(const std::string& source, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object(),
                   bool hf = true) {
  LexerOptions opts;
  opts.trim_blocks = hf;
  opts.lstrip_blocks = hf;
  const Body body = parse_template(source, opts);
  Dict globals;
  add_builtin_globals(globals);
  for (auto it = vars.begin(); it != vars.end(); ++it) globals.set(Value::string(it.key()), from_json(it.value()));
  Interpreter interp(globals);
  return interp.render(body);
}

std::string error_of(const std::string& source, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
  try {
    render(source, vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(JinjaWhitespace, DefaultsKeepNewlinesAndDropOneTrailingNewline) {
  EXPECT_EQ(render("{% if true %}\n  x\n{% endif %}\n", nlohmann::ordered_json::object(), false), "\n  x\n");
}

TEST(JinjaWhitespace, TrimAndLstripBlocksAsHuggingFaceRenders) {
  EXPECT_EQ(render("{% if true %}\n  x\n{% endif %}\n"), "  x\n");
  // lstrip_blocks strips indentation before block and comment tags only, never before {{ }}.
  EXPECT_EQ(render("  {{ 'v' }}\n  {% if true %}t{% endif %}\n  {# c #}\n"), "  v\nt");
}

TEST(JinjaWhitespace, MinusStripsAllWhitespaceOnItsSide) {
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c", nlohmann::ordered_json::object(), false), "abc");
  EXPECT_EQ(render("a  {{- 'b' -}}  c\n  {{ 'd' }}  ", nlohmann::ordered_json::object(), false), "abc\n  d  ");
}

TEST(JinjaLoop, LoopVariables) {
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
                   "{{ loop.length }}{{ loop.revindex }}|{% endfor %}"),
            "01TrueFalse33|12FalseFalse32|23FalseTrue31|");
}

TEST(JinjaLoop, ElseFilterBreakContinue) {
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}:{{ "
                   "x }}{% endfor %}"),
            "empty1:22:3");
  EXPECT_EQ(render("{% for i in range(10) %}{% if i % 2 %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}"
                   "{{ i }}{% endfor %}"),
            "0246");
}

TEST(JinjaScope, SetInLoopDoesNotLeakButNamespaceDoes) {
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% set local = i %}"
                   "{% endfor %}{{ ns.n }} {{ local is defined }}"),
            "6 False");
  EXPECT_EQ(render("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% for i in [1] %}{% set x = 3 %}{% "
                   "endfor %}{{ x }}"),
            "22");
}

TEST(JinjaExpr, Slicing) {
  EXPECT_EQ(render("{{ m[::-1] }} {{ m[1:] }} {{ m[:-1] }} {{ m[::2] }} {{ 'héllo'[::-1] }} {{ 'abcdef'[4:1:-1] }}",
                   {{"m", {1, 2, 3, 4}}}),
            "[4, 3, 2, 1] [2, 3, 4] [1, 2, 3] [1, 3] olléh edc");
}

TEST(JinjaExpr, PythonPrintingAndArithmetic) {
  EXPECT_EQ(render("{{ 1.0 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ none }} {{ true }} {{ [1, 'a', none] }} {{ {'k': 'v'} }} "
                   "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 2 ** 8 }} {{ 1 / 4 }}"),
            "1.0 1e+20 0.30000000000000004 None True [1, 'a', None] {'k': 'v'} 3 -4 -2 256 0.25");
}

TEST(JinjaExpr, UndefinedIsEmptyAndFalsy) {
  EXPECT_EQ(render("[{{ u }}] [{{ u ~ 'x' }}] {{ u | length }} {{ 'yes' if u else 'no' }}"), "[] [x] 0 no");
  EXPECT_EQ(render("{{ none.x }}|{{ [1][5] }}|{{ {}['k'] }}"), "||");
  EXPECT_NE(error_of("{{ u.attr }}").find("'u' is undefined"), std::string::npos);
}

TEST(JinjaExpr, Tests) {
  EXPECT_EQ(render("{{ u is defined }} {{ n is none }} {{ 's' is string }} {{ {} is mapping }} {{ [] is iterable }} "
                   "{{ 1.5 is number }} {{ 'ab' is sequence }} {{ t is true }} {{ f is false }} {{ 1 is true }}",
                   {{"n", nullptr}, {"t", true}, {"f", false}}),
            "False True True True True True True True True False");
}

TEST(JinjaFilters, CommonFilters) {
  EXPECT_EQ(
      render(
          "[{{ '  x  ' | trim }}] {{ [1, 2] | join('-') }} {{ [3, 4] | first }} {{ [3, 4] | last }} {{ [] | length }} "
          "{{ u | default('dflt') }} {{ ms | map(attribute='role') | join(',') }} "
          "{{ ms | selectattr('role', 'equalto', 'user') | list | length }}",
          {{"ms", {{{"role", "user"}}, {{"role", "assistant"}}, {{"role", "user"}}}}}),
      "[x] 1-2 3 4 0 dflt user,assistant,user 2");
}

TEST(JinjaFilters, LazyFiltersAreGenerators) {
  // map/select/selectattr/... return generators in jinja2: always true, and spent once iterated.
  const nlohmann::ordered_json ms = {{{"role", "user"}}, {{"role", "assistant"}}, {{"role", "user"}}};
  EXPECT_EQ(render("{{ 'yes' if ms | selectattr('role', 'equalto', 'tool') else 'no' }} "
                   "{{ 'yes' if ms | selectattr('role', 'equalto', 'tool') | list else 'no' }}",
                   {{"ms", ms}}),
            "yes no");
  EXPECT_EQ(render("{% set g = ms | map(attribute='role') %}{{ g | join(',') }}|{{ g | join(',') }}|{{ g is sequence }}",
                   {{"ms", ms}}),
            "user,assistant,user||False");
}

TEST(JinjaFilters, TitleRoundAndOddFollowJinja) {
  // jinja2's title filter is not str.title(); round keeps ints ints; odd takes floats.
  EXPECT_EQ(render("{{ 'abc' | title }} {{ \"they're bill's (x-y)\" | title }} {{ \"they're bill's\".title() }} "
                   "{{ 2 | round }} {{ 2.5 | round }} {{ 3.0 is odd }}"),
            "Abc They're Bill's (X-Y) They'Re Bill'S 2 2.0 True");
}

TEST(JinjaScope, NamespaceCyclesAreBrokenAfterTheRender) {
  // Under ASan this would report a leak if the interpreter left the cycle standing.
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.self = [ns] %}{{ ns.self | length }}"), "1");
}

TEST(JinjaFilters, TojsonIsJsonDumpsWithoutAsciiEscapes) {
  nlohmann::ordered_json d = {{"b", "é\n"}, {"a", {1, 2.5, nullptr, true}}};
  EXPECT_EQ(
      render("{{ d | tojson }} {{ d | tojson(indent=2) }} {{ d | tojson(sort_keys=true) }}", {{"d", d}}),
      "{\"b\": \"é\\n\", \"a\": [1, 2.5, null, true]} {\n  \"b\": \"é\\n\",\n  \"a\": [\n    1,\n    2.5,\n    null,\n"
      "    true\n  ]\n} {\"a\": [1, 2.5, null, true], \"b\": \"é\\n\"}");
}

TEST(JinjaMethods, StringAndDictMethods) {
  EXPECT_EQ(render("{{ 'a b  c'.split() }} {{ 'a,b,c'.split(',', 1) }} {{ '--x--'.strip('-') }} {{ "
                   "'abc'.startswith(('x', 'a')) }} "
                   "{{ '{}-{}'.format(1, 'two') }} {{ 'x'.upper() ~ 'Y'.lower() }}"),
            "['a', 'b', 'c'] ['a', 'b,c'] x True 1-two Xy");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ d.get('z', 0) }} {{ d.keys() | list }} "
                   "{{ 'a' in d }}",
                   {{"d", {{"a", 1}, {"b", 2}}}}),
            "a=1;b=2; 0 ['a', 'b'] True");
}

TEST(JinjaStatements, MacrosSetBlocksAndFilterBlocks) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ "
                   "greet('B', '?') }} "
                   "{{ greet(punct='.', name='C') }}"),
            "Hi A! Hi B? Hi C.");
  EXPECT_EQ(render("{% set s %}  captured {{ 1 + 1 }}  {% endset %}[{{ s }}]{% filter upper %}up{% endfilter %}"),
            "[  captured 2  ]UP");
}

TEST(JinjaErrors, SyntaxErrorsNameLineAndColumn) {
  EXPECT_NE(error_of("line one\n{% include 'x' %}").find("line 2, column 4: Encountered unknown tag 'include'"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'unclosed }}").find("line 1, column 4"), std::string::npos);
  EXPECT_NE(error_of("{% for x in y %}no end").find("Unexpected end of template"), std::string::npos);
  EXPECT_NE(error_of("ab\n  {{ (1 }}").find("line 2, column 9"), std::string::npos);
  EXPECT_NE(error_of("{% for x in y recursive %}{% endfor %}").find("line 1, column 15"), std::string::npos);
}

TEST(JinjaErrors, RuntimeErrorsNameLineAndColumn) {
  const std::string e = error_of("ok\n{{ 1 + 'a' }}");
  EXPECT_NE(e.find("line 2, column 6"), std::string::npos) << e;
  EXPECT_NE(e.find("unsupported operand type(s) for +: 'int' and 'str'"), std::string::npos) << e;
  EXPECT_NE(error_of("{% set l = [1] %}{{ l.append(2) }}").find("unsafe"), std::string::npos);
}

TEST(JinjaErrors, RaiseExceptionKeepsTheTemplatesMessage) {
  EXPECT_EQ(error_of("{{ raise_exception('Roles must alternate ' ~ 42) }}"), "Roles must alternate 42");
}

TEST(JinjaErrors, RecursiveMacrosStopInsteadOfOverflowing) {
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("nested deeper"),
            std::string::npos);
}

}  // namespace
}  // namespace nanovllm::jinja
