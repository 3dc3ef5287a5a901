"""Face geometry shared by the stages and the model: square crops around boxes, landmark alignment."""
