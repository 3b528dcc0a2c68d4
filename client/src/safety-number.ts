/** Safety numbers: computed and compared by the Signal backend. */
export { matchesSafetyNumber, safetyNumber, type SafetyNumber } from "./signal/safety-number.js";
