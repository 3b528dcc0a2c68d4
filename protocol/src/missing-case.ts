/**
 * For exhaustive switches over tagged unions: a call site fails to compile
 * when a variant is not handled, and throws if one arrives at run time anyway.
 */
export function missingCase(value: never): never {
  throw new Error(`Unhandled case: ${JSON.stringify(value)}`);
}
