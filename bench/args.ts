/** The micro-benchmarks' flags: the value after `name` on the command line, if any. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A numeric flag, `def` when absent. */
export function numberArg(name: string, def: number): number {
  const v = argValue(name);
  return v === undefined ? def : Number(v);
}
