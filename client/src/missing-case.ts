/** For exhaustive switches over tagged unions: fails to compile when a case is missing. */
export function missingCase(value: never): never {
  throw new Error(`Unhandled case: ${JSON.stringify(value)}`);
}
