/**
 * How Asterisk 22 reads what we write, transliterated from its C so tests can
 * check our escaping against the real parsing rules rather than against our
 * own idea of them.
 */

const MAX_ARGS = 128;

/** res/res_agi.c parse_args(): one AGI command line into argv. */
export function parseAgiArgs(line: string): string[] {
  const argv: string[] = [];
  let quoted = false;
  let escaped = false;
  let whitespace = true;
  const normal = (ch: string): void => {
    if (whitespace) {
      if (argv.length >= MAX_ARGS - 1) return; // "Too many arguments, truncating"
      argv.push('');
      whitespace = false;
    }
    argv[argv.length - 1] += ch;
    escaped = false;
  };
  for (const ch of line) {
    switch (ch) {
      case '"':
        if (escaped) {
          normal(ch);
          break;
        }
        quoted = !quoted;
        if (quoted && whitespace) {
          argv.push('');
          whitespace = false;
        }
        escaped = false;
        break;
      case ' ':
      case '\t':
        if (!quoted && !escaped) whitespace = true;
        else normal(ch);
        break;
      case '\\':
        if (escaped) normal(ch);
        else escaped = true;
        break;
      default:
        normal(ch);
    }
  }
  return argv;
}

/** main/app.c __ast_app_separate_args(): an application's data into arguments. */
export function separateAppArgs(buf: string, delim: string, removeChars: boolean, arraylen: number): string[] {
  const s = [...buf];
  const starts: number[] = [];
  let scan = 0;
  let wasdelim = -1;
  let paren = 0;
  let quote = false;
  let bracket = 0;
  let argc = 0;
  for (argc = 0; scan < s.length && s[scan] !== '\0' && argc < arraylen - 1; argc++) {
    starts[argc] = scan;
    for (; scan < s.length && s[scan] !== '\0'; scan++) {
      const c = s[scan];
      if (c === '(') paren++;
      else if (c === ')') {
        if (paren) paren--;
      } else if (c === '[') bracket++;
      else if (c === ']') {
        if (bracket) bracket--;
      } else if (c === '"' && delim !== '"') {
        quote = !quote;
        if (removeChars) {
          s.splice(scan, 1);
          scan--;
        }
      } else if (c === '\\') {
        if (removeChars) s.splice(scan, 1);
        else scan++;
      } else if (c === delim && !paren && !quote && !bracket) {
        wasdelim = scan;
        s[scan] = '\0';
        scan++;
        break;
      }
    }
  }
  if ((scan < s.length && s[scan] !== '\0') || (scan > 0 && scan - 1 === wasdelim)) starts[argc++] = scan;
  return starts.slice(0, argc).map((start) => {
    const end = s.indexOf('\0', start);
    return s.slice(start, end < 0 ? s.length : end).join('');
  });
}

/**
 * main/pbx_variables.c pbx_builtin_setvar_multiple() on the data of
 * `EXEC MSet`: the variables it would set, in order.
 */
export function msetAssignments(data: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const pair of separateAppArgs(data, ',', true, 99)) {
    const parts = separateAppArgs(pair, '=', false, 2);
    if (parts.length === 2) out.push([parts[0]!, parts[1]!]);
  }
  return out;
}

/** What Asterisk does with one command line we send: the variables set by an `EXEC MSet`. */
export function asteriskRunsMSet(line: string): Array<[string, string]> {
  const argv = parseAgiArgs(line);
  if (argv[0] !== 'EXEC' || argv[1]?.toLowerCase() !== 'mset') throw new Error(`not EXEC MSet: ${line}`);
  // handle_exec passes argv[2] only: anything after it is silently dropped.
  if (argv.length !== 3) throw new Error(`EXEC MSet with ${argv.length - 2} data tokens; Asterisk drops all but the first`);
  return msetAssignments(argv[2]!);
}
