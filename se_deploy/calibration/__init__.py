"""se_deploy.calibration"""
