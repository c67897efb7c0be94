/** Types of the parts of `ml-isolation-forest` 0.1.0 (which ships none) that the forest bench uses. */
declare module 'ml-isolation-forest' {
  export class IsolationForest {
    constructor(options?: { nEstimators?: number });
    train(trainingSet: number[][]): void;
    predict(data: number[][]): number[];
  }
}
